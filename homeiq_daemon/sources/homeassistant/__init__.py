"""sources/homeassistant"""
