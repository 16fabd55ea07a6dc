"""Streaming training data to a device, and keeping what it learned (docs/streaming.md)."""
from .session import DeviceError, LinkError, Session, StreamError, TrainStats
from .targets import Connection, connect

__all__ = ["connect", "Connection", "Session", "TrainStats", "StreamError", "LinkError", "DeviceError"]
