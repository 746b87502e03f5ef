#!/usr/bin/env bash
# Installs the console's npm dependencies exactly as pinned by package-lock.json
# and copies the vendored front-end files (Leaflet) into the crate that embeds
# them. Run it after changing a version in package.json (then `npm install`
# there first to update the lockfile) and commit the copied files: building
# lastmile needs neither Node.js nor this script.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
dest="$root/crates/lastmile-server/src/console/vendor/leaflet"

cd "$here"
npm ci --no-audit --no-fund

src="$here/node_modules/leaflet"
version="$(node -p "require('$src/package.json').version")"
if [ "$version" != "1.9.4" ]; then
  echo "vendor.sh: expected leaflet 1.9.4, npm installed $version" >&2
  exit 1
fi

rm -rf "$dest"
mkdir -p "$dest/images"
cp "$src/dist/leaflet.js" "$src/dist/leaflet.css" "$dest/"
cp "$src/dist/images/"*.png "$dest/images/"
cp "$src/LICENSE" "$dest/LICENSE"

# The copies are byte for byte the package's. leaflet.js keeps its
# sourceMappingURL comment; browsers fetch the map only with developer tools
# open, and then from the same origin (lastmile answers 404).

echo "vendor.sh: leaflet $version copied to ${dest#"$root"/}:"
(cd "$dest" && find . -type f | sort | sed 's|^\./|  |')
