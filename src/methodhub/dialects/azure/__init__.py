"""Azure IoT Hub: SAS tokens and connection strings, the MQTT device dialect, the REST front door."""
