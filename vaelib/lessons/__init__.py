"""One helper module per notebook, named after it: what a notebook needs beyond the library's own API."""
