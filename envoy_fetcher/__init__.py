"""The nightjar envoy_fetcher sidecar: poll the bundle store, verify, swap, supervise Envoy."""
