"""Simulated sensors and camera feeds for a whole city, and replay of recorded feeds."""
