"""The steps of the query chain, one role each (see chain.py and app.py)."""
