"""HTTP routes: thin adapters that parse, call the funnel and shape the answer."""
