# Sourced by run-dev.sh and run-replicas.sh: development secrets, made once
# at random into var/dev-secrets.env (mode 0600), reused, and exported.
mkdir -p var
chmod 700 var
if [ ! -f var/dev-secrets.env ]; then
    (
        umask 077
        {
            echo "EXTEND_WEBHOOK_SECRET=wss_$(openssl rand -hex 24)"
            echo "DG_CRM_SECRET=whsec_$(openssl rand -base64 32)"
            echo "DG_ADMIN_TOKEN=$(openssl rand -hex 24)"
            echo "DG_AUDIT_KEY=$(openssl rand -hex 32)"
        } > var/dev-secrets.env
    )
fi
set -a
# shellcheck disable=SC1091
. var/dev-secrets.env
set +a
