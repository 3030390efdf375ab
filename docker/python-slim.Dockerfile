# A local stand-in for Docker Hub's python:3.11-slim-bookworm, the base of
# Modal's Image.debian_slim(python_version="3.11"): Debian bookworm with
# Python 3.11 at /usr/local (python, python3, pip), LANG=C.UTF-8, as there.
# The Modal emulator's Docker runtime builds the rest of the Modal image's
# recipe on top of it (modal_emulator/image_builds.py); no container registry
# is needed. Built by docker/build-image.sh --dockerfile (scripts/docker-engine.sh).
ARG BASE=agent-sandbox-base:bookworm
FROM ${BASE}

RUN echo "deb http://deb.debian.org/debian-security bookworm-security main" > /etc/apt/sources.list.d/security.list \
 && apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3 python3-venv ca-certificates \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb

# Extra CA certificates (a TLS-intercepting proxy's), as in the agent image; pip is
# told to use the system store in /etc/pip.conf (a file, not a variable the sandbox sees).
COPY extra-ca.crt /tmp/extra-ca.crt
RUN if [ -s /tmp/extra-ca.crt ]; then \
      mkdir -p /usr/local/share/ca-certificates/extra \
      && awk '/BEGIN CERTIFICATE/{n++} n{print > ("/usr/local/share/ca-certificates/extra/ca-" n ".crt")}' /tmp/extra-ca.crt \
      && update-ca-certificates >/dev/null; \
    fi; rm -f /tmp/extra-ca.crt \
 && printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' > /etc/pip.conf

# python:slim keeps its Python in /usr/local; a venv there gives the same layout
# (and a pip that may install, which Debian's own Python refuses).
RUN python3 -m venv /usr/local && ln -sf /usr/local/bin/pip /usr/local/bin/pip3
ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 PYTHON_VERSION=3.11
CMD ["python3"]
