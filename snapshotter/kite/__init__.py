"""Talking to Kite: HTTP (envelope, deadlines, limits), logins, the client, the session cache."""
