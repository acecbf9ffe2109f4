"""Kafka access: offset planning, bounded range reads and topic administration."""
