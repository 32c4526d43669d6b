"""The HTTP inference server (``squeezebert serve``): FastAPI routes over the pipelines, dynamic batching with a
bounded queue, Prometheus metrics and a web playground. Needs the ``serve`` extra (fastapi, uvicorn,
prometheus_client). Entry points: :func:`squeezebert.serve.app.create_app`, :func:`squeezebert.serve.server.serve`.
"""
