"""Host library: transports, device API (``plasticore.host``)."""
