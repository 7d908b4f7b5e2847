"""Who is asking (authentication) and which namespaces they may see (authorization).

The web layer resolves each request's Principal once (routes/access.py) into an Access; the catalog view, the
PromQL scopes and the live list take that Access, so no route decides visibility on its own.
"""
