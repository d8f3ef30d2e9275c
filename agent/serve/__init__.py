"""`rvos serve`: the web page over the session API."""
