"""The running process, apart from the library: the hub, its workers, the data dir, TLS files,
logging and memory tuning."""
