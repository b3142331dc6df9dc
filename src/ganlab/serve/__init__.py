"""``ganlab serve``: trained models behind an HTTP API and a web page (needs the ``serve`` extra).

models.py loads what is served; limits.py holds what is refused and how; metrics.py the Prometheus text;
app.py the FastAPI app; page.html the page at ``/``.
"""
