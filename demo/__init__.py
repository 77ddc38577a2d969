"""``make demo``: the whole system on one machine (moto server, real Envoy, real HTTP)."""
