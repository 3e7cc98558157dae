#!/usr/bin/env bash
# agentapi-proxy's default agent startup script (embedded in the binary).
#
# Contract: "$@" is the complete agent-server command line, built by the proxy as separate
# arguments. Request data only ever arrives as environment variables that the proxy has
# validated; nothing here evaluates it. The script prepares the session, then execs "$@".
#
# Variables: APX_SESSION_ID, APX_USER_ID, APX_PORT, APX_SESSION_DIR, APX_PROXY_BIN, and when
# set APX_REPO_FULLNAME (owner/repo) with APX_REPO_HOST, and APX_SYSTEM_PROMPT.
set -euo pipefail

cd -- "$APX_SESSION_DIR"

if [[ -n "${APX_REPO_FULLNAME:-}" ]]; then
  clone_dir="$APX_SESSION_DIR/repo"
  "$APX_PROXY_BIN" helpers init-github-repository \
    --repo-fullname "$APX_REPO_FULLNAME" \
    --host "${APX_REPO_HOST:-github.com}" \
    --clone-dir "$clone_dir"
  cd -- "$clone_dir"
fi

exec "$@"
