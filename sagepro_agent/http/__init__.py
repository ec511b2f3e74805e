"""The direct HTTP binding of the gateway contract (`wsgi.make_app`, `wsgi.serve`)."""
