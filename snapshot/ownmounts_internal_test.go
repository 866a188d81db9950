package snapshot

import (
	"maps"
	"slices"
	"strings"
	"testing"
)

// TestParseOwnMounts: snapforge's mounts are known by their type or their
// source, not by "snapforge" anywhere in a line: a volume or an export of
// that name is somebody's data, and a backup under it must not be refused.
func TestParseOwnMounts(t *testing.T) {
	info := strings.Join([]string{
		`29 1 254:0 / / rw,relatime shared:1 - ext4 /dev/mapper/snapforge--vg-root rw`,
		`40 29 0:50 / /srv/snapforge rw,relatime shared:20 - nfs4 nas:/srv/snapforge rw`,
		`41 29 0:51 / /home/me/Backups ro,nosuid,nodev,relatime shared:21 - fuse.snapforge snapforge:/srv/repo ro,user_id=0`,
		`42 29 0:52 / /mnt/with\040space ro,nosuid,nodev shared:22 - fuse snapforge:/srv/other ro,user_id=1000`,
		`43 29 0:53 / /mnt/sshfs rw shared:23 - fuse.sshfs me@host:/snapforge rw`,
	}, "\n")
	got := slices.Sorted(maps.Keys(parseOwnMounts(strings.NewReader(info))))
	if want := []string{"/home/me/Backups", "/mnt/with space"}; !slices.Equal(got, want) {
		t.Fatalf("own mounts %q, want %q", got, want)
	}
}
