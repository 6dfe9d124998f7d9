"""Guest-facing device models (installed as e2kchar.devices)."""
