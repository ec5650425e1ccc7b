"""HTTP transport: Jinja2 pages, the JSON API, and health."""
