"""The HTTP inference server (``squeezebert serve``): FastAPI routes over the pipelines, dynamic batching with a
bounded queue, Text Embeddings Inference's and OpenAI's APIs beside ours, an API key, connection guards, Prometheus
metrics and a web playground. Needs the ``serve`` extra (fastapi, uvicorn, prometheus_client). Entry points:
:func:`squeezebert.serve.app.create_app`, :func:`squeezebert.serve.server.serve`.

Modules: ``config`` (the settings), ``service`` (pipelines + batcher + limits: what routes call), ``app`` (our
routes and the middleware stack), ``compat`` (TEI / OpenAI routes), ``middleware``, ``protocol`` (connection
timeouts and limit under uvicorn), ``batcher``, ``metrics``, ``schemas``, ``playground``, ``server`` (uvicorn).
"""
