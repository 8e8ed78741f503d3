"""Preference labeling: statistics over human votes between two model responses."""
