"""Models: classical pipelines, network registry and the shared estimator protocol."""
