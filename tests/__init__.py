"""Tests for the ha_ingestor integration."""
