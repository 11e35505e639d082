"""Webhook notifications: events, durable journals, delivery."""
