"""The IOC's REST API and live WebSocket, serving the screens in ``dashboards/``."""
