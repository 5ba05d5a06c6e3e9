"""Systolic."""
