"""Alibaba Cloud IoT: Link SDK signing, the MQTT device dialect, the POP front door (RRpc, ...)."""
