# Sourced by hack/image/rootfs.sh and hack/image/lab-rootfs.sh: a program's shared
# libraries and the copyright files of the Debian packages they come from, copied into a
# root filesystem.

# package_of PATH: the Debian package that ships PATH. dpkg knows the paths a package
# names (/lib/..., /bin/ip), not always their merged-/usr twins, so those are asked too.
package_of() {
  local path pkg resolved
  resolved=$(readlink -f "$1")
  for path in "$1" "$resolved" "${1#/usr}" "${resolved#/usr}"; do
    pkg=$(dpkg-query -S "$path" 2>/dev/null | head -n 1 | cut -d: -f1)
    [ -z "$pkg" ] || break
  done
  echo "$pkg"
}

# install_libraries BINARY OUT: exactly the shared libraries BINARY loads (ldd) and the C
# library's loader, at their paths under OUT. Prints their packages, one a line.
install_libraries() {
  local binary=$1 out=$2 libraries lib pkg
  libraries=$(ldd "$binary" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}')
  [ -n "$libraries" ] || { echo "image: ldd found no libraries for $binary" >&2; return 1; }
  for lib in $libraries; do
    install -D -m 0755 "$(readlink -f "$lib")" "$out$lib"
    pkg=$(package_of "$lib")
    [ -n "$pkg" ] || { echo "image: $lib belongs to no Debian package" >&2; return 1; }
    echo "$pkg"
  done
}

# install_copyrights OUT PACKAGE...: the copyright file of each package, under OUT.
install_copyrights() {
  local out=$1 pkg
  shift
  for pkg in $(printf '%s\n' "$@" | sort -u); do
    install -D -m 0644 "/usr/share/doc/${pkg%%:*}/copyright" "$out/usr/share/doc/${pkg%%:*}/copyright"
  done
}
