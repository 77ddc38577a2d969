"""The nightjar configurator: Cloud Map -> mesh model -> rendered Envoy files -> S3 bundle."""
