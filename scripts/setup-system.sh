#!/usr/bin/env bash
# Install the Debian packages edgekws needs, only when something is missing (idempotent, quiet
# when all is there). Everything comes from Debian main.
set -euo pipefail
need=()
command -v espeak-ng >/dev/null || need+=(espeak-ng)
command -v flite >/dev/null || need+=(flite)
command -v text2wave >/dev/null || need+=(festival)
[ -d /usr/share/festival/voices/english/kal_diphone ] || need+=(festvox-kallpc16k)
[ -d /usr/share/festival/voices/english/ked_diphone ] || need+=(festvox-kdlpc16k)
ls -d /usr/share/festival/voices/us/cmu_us_slt_arctic_hts >/dev/null 2>&1 || need+=(festvox-us-slt-hts)
command -v sox >/dev/null || need+=(sox)
command -v ssh >/dev/null || need+=(openssh-client)
[ -x /usr/sbin/sshd ] || need+=(openssh-server)  # the bench tests run a private sshd on 127.0.0.1
command -v qemu-aarch64 >/dev/null || need+=(qemu-user)  # emulated aarch64 (`make arm`)
[ -x /usr/sbin/debootstrap ] || need+=(debootstrap)
command -v gcc >/dev/null || need+=(gcc)  # the qemu instruction-count plugin (`make arm`)
command -v curl >/dev/null || need+=(curl)  # its header, from Debian's qemu source archive
command -v xz >/dev/null || need+=(xz-utils)
[ ${#need[@]} -eq 0 ] && exit 0
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "setup: installing Debian packages: ${need[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
