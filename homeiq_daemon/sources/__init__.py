"""Where state changes come from: Home Assistant's WebSocket, a replay file (and SwitchBot)."""
