"""The web app (FastAPI): create_app(config) in app.py; routers per resource in routers/."""
