"""MQTT ingestion of sensor streams into TimescaleDB: validate, batch, store once, acknowledge."""
