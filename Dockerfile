# sim in one container: the harness and every agent's shell (README: "Containers and security").
#
#   docker build -t sim .
#   docker run --rm -e ANTHROPIC_API_KEY -v "$PWD/runs:/sim/runs" sim run scenarios/quickstart.yaml
#
# The base is a build argument so the tests can build on a local stand-in where no image
# registry is reachable; anyone else gets the official image.
ARG BASE_IMAGE=python:3.12-slim
FROM ${BASE_IMAGE}

# bash runs the agents' shells, util-linux gives flock(1) for the shared locks, tini is PID 1
# (it reaps what agents leave behind), passwd gives useradd for `isolation: users`.
# Versions are not pinned: the base image's Debian release fixes them, and pinned versions
# vanish from the archive at its next point release.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends bash util-linux tini passwd procps \
    && rm -rf /var/lib/apt/lists/*

# A venv: Debian-based Pythons refuse system-wide pip installs (PEP 668).
ENV VIRTUAL_ENV=/opt/sim \
    PATH=/opt/sim/bin:$PATH \
    PYTHONUNBUFFERED=1
RUN python3 -m venv /opt/sim

# Dependencies first, from pyproject.toml alone (with stand-ins for the rest), so editing
# the code or the README does not reinstall them.
WORKDIR /src
COPY pyproject.toml ./
RUN mkdir sim analysis && touch README.md sim/__init__.py analysis/__init__.py \
    && pip install --no-cache-dir . \
    && pip uninstall --yes sim \
    && rm -rf sim analysis README.md build ./*.egg-info

COPY README.md ./
COPY sim ./sim
COPY analysis ./analysis
RUN pip install --no-cache-dir --no-deps . && rm -rf build ./*.egg-info

# The default user is not root. `isolation: users` needs root (docker run --user root).
RUN useradd --create-home --uid 1000 --user-group --shell /bin/bash sim \
    && mkdir -p /sim/runs \
    && chown sim:sim /sim/runs
WORKDIR /sim
COPY scenarios ./scenarios
USER 1000:1000
VOLUME ["/sim/runs"]

ENTRYPOINT ["tini", "--", "python", "-m", "sim"]
CMD ["--help"]
