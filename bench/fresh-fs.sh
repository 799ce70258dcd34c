#!/usr/bin/env bash
# A fresh filesystem for a builder's state, as a CI runner's new disk gives it: DIR becomes the
# mount point of a new ext4 WITH a journal (mkfs's default features, inode tables written now
# rather than by a background thread during the timed runs) in the sparse file DIR.img, through a
# loop device with direct I/O (so the backing file's page cache does not serve it twice).
# Whatever was mounted at DIR (and below it) is unmounted first, and its image removed.
#
# usage: fresh-fs.sh DIR [SIZE]     make it (SIZE default 16G: sparse, only what is written counts)
#        fresh-fs.sh --drop DIR     unmount it and remove its image
set -euo pipefail
drop() {
  if mountpoint -q "$1"; then umount -R "$1" 2>/dev/null || umount -Rl "$1"; fi
  rm -f "$1.img"
}
case ${1:-} in
  --drop) drop "${2:?}" ;;
  ''|-h|--help) sed -n 2,10p "$0" >&2; exit 2 ;;
  *)
    dir=$1 size=${2:-16G}
    drop "$dir"
    mkdir -p "$dir"
    truncate -s "$size" "$dir.img"
    mkfs.ext4 -q -F -O has_journal -i 8192 -E lazy_itable_init=0,lazy_journal_init=0 "$dir.img"
    dev=$(losetup -f --show --direct-io=on "$dir.img")
    mount "$dev" "$dir"
    losetup -d "$dev"   # detached when unmounted
    ;;
esac
