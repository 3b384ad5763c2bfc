# The same environment as scripts/setup.sh: Debian 12, Python 3.11, iverilog, yosys, g++, pinned Python packages.
FROM python:3.11-slim-bookworm
RUN apt-get update \
 && apt-get install -y --no-install-recommends iverilog yosys g++ make git \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/edgelearn
COPY . .
RUN bash scripts/setup.sh
ENV PATH=/opt/edgelearn/.venv/bin:$PATH
ENTRYPOINT ["edgelearn"]
CMD ["--help"]
