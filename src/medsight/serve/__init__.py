"""The online diagnostic service: a FastAPI app over the shared `Predictor` (`create_app`), with
accounts, a database, an audit chain, dynamic batching and hostile uploads decoded in workers."""
