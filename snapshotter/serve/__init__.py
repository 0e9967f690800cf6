"""`snapshotter serve`: a read-only web dashboard over the database and its views, and the
page the daily Kite Connect login lands on (docs/dashboard.md).

- ``server``: checks who may see it, opens the database read-only, runs uvicorn
- ``database``: read-only engines; one consistent read transaction per page
- ``app``: the Starlette application: routes, templates, static files, errors
"""
