"""Alerts: every failed asset check and every failed run, told to a person once."""
