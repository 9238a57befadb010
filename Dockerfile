# Hookbus: one image, three services. `docker run hookbus services.ingest`
# (Kubernetes passes the module as `args`; see deploy/k8s/base).
FROM python:3.11-slim AS build
WORKDIR /src
RUN python -m venv /venv
COPY pyproject.toml ./
COPY schemas ./schemas
COPY services ./services
COPY devtools ./devtools
RUN /venv/bin/pip install --no-cache-dir .

FROM python:3.11-slim
RUN groupadd --gid 10001 hookbus && useradd --uid 10001 --gid hookbus --no-create-home hookbus
COPY --from=build /venv /venv
ENV PATH=/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
USER 10001:10001
EXPOSE 8080 9101 9102
ENTRYPOINT ["python", "-m"]
CMD ["services.ingest"]
