# Shared helpers for scripts/*.sh. Sourced, not run.

# Rust 1.90 or newer must be on PATH (rustup's stable toolchain). Debian's packaged cargo is
# older than smsgate needs, so this checks rather than installs.
need_rust() {
    if ! command -v cargo >/dev/null 2>&1; then
        echo "cargo not found: install Rust 1.90+ (https://rustup.rs) and retry" >&2
        exit 1
    fi
    local v
    v=$(rustc --version | awk '{print $2}')
    if [ "$(printf '%s\n1.90.0\n' "$v" | sort -V | head -n1)" != "1.90.0" ]; then
        echo "rustc $v is too old: smsgate needs 1.90 or newer" >&2
        exit 1
    fi
}

# Installs Debian packages that are missing (as root, or with sudo when available).
apt_install() {
    local missing=()
    for pkg in "$@"; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
}
