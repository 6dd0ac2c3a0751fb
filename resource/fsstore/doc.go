// Package fsstore keeps a domain's resources as files in a directory, so that a
// single Pullmail server needs nothing but its data directory. It implements
// resource.Store and runs resource/storetest.
//
// The directory is a bucket.Bucket (Store.Bucket: the layout, the commits,
// the format file); the resources over it are resource/blobstore's (plain
// bytes and chunk sums) or resource/sealed's (encrypted), the same layers
// that serve S3 and memory, in the formats below, which this package wrote
// before they existed.
//
// # Layout
//
// Under the directory given to New:
//
//	format                 one line naming the store's format (see below)
//	blobs/ab/<ID>          one file per resource; ab is the first two characters
//	                       of the ID (4096 directories, made as needed)
//	blobs/ab/<ID>.sums     a plain store's chunk sums of the resource (below)
//	tmp/<random>           uploads in progress (of a store opened without a node name)
//	tmp/NODE/<random>      uploads in progress of node NODE (Options.Node)
//
// Every file is reached through an os.Root opened on the directory, and every
// ID is checked with resource.ParseID before it becomes a path, so no name or
// symbolic link can lead outside the directory.
//
// Put streams into tmp/, hashing as it goes (resource.Copy), fsyncs the file,
// renames it to its place under blobs/ and fsyncs that directory. A file under
// blobs/ is therefore always complete; whatever a crash leaves in tmp/ is
// removed by the next New. Without Options.Node a directory belongs to one
// Store (one process) at a time: New clears tmp/, unless Options.Shared says
// another process (the server, while pullmail fsck runs) holds it. Nodes of
// a domain that share the directory each name themselves (Options.Node):
// each writes in and clears its own tmp/NODE/, so that one starting up does
// not remove another's uploads in progress.
//
// Putting a resource that is already stored replaces the stored copy with the
// new one, which the upload has just verified: so a Put of the right bytes
// repairs a damaged copy, at the price of a rename and a directory fsync per
// repeated Put. A file's modification time is the resource's Info.Created: a
// repeated Put therefore also restarts garbage collection's grace period.
//
// # Damage
//
// No byte leaves the store unchecked (resource.Object): an Object reads by
// chunk of 64 KiB and checks each chunk it touches before returning any byte
// of it, so a whole read and a Range read alike fail with resource.ErrDamaged
// where they reach a damaged chunk, having returned only intact bytes, and the
// other chunks stay readable. Each damaged resource is counted once, until it
// is stored again or removed (Store.DamageCount, Options.OnDamage: the
// server's pullmail_resource_damaged_total), and logged. pullmail fsck reads
// every blob whole (resource.Check).
//
// # The format file
//
// It holds "pullmail-fsstore 2 plain" or "pullmail-fsstore 2 aes-256-gcm
// key-check=<base64url>" where key-check is the first 16 bytes of
// HMAC-SHA256(key, "pullmail-fsstore key check"). New refuses a directory whose
// format file disagrees with its Options: a missing key, an unexpected key, or
// another key. A store made before format 2 holds "pullmail-fsstore 1 …" and
// keeps its layout of two directory levels, blobs/ab/cd/<ID>; New makes every
// new store in format 2, whose one level spares a small Put the directories it
// nearly always had to make (and fsync) in format 1.
//
// # Plain files and their chunk sums
//
// A plain blob file holds the resource's bytes. Its sidecar, <ID>.sums beside
// it, holds the SHA-256 of each 64 KiB chunk of those bytes, computed by Put
// from the stream it verified. A blob of one chunk at most (64 KiB) has no
// sidecar: the SHA-256 of its one chunk is its ID, so small blobs, most of a
// domain's, cost no extra file.
//
//	0   "PMCS"          magic
//	4   0x01 0 0 0      version 1, reserved
//	8   uint32be        the chunk size: 65536
//	12  uint64be        the resource's size
//	20  ID[43]          the resource's ID
//	63  sum[32] ...     SHA-256 of chunk 0, 1, ...: ceil(size/65536) of them
//	                    (none for the empty resource); the last chunk holds
//	                    the rest of the bytes
//
// Put writes the sidecar in tmp/, then renames it into place before the
// blob, and fsyncs the directory once for both: a crash between the two
// renames leaves the sums of the ID's bytes beside the old copy (or none),
// which they describe as well, since they depend on the ID alone. The
// sidecar itself is not fsynced: one that a crash leaves short or wrong is
// rebuilt like a damaged one (below), so its durability costs nothing. Remove
// removes both; Enumerate ignores sidecars.
//
// An Object compares each chunk it reads with its sum. A sidecar that is
// missing (a blob stored before sidecars) or does not describe its
// blob (its header names another ID or size, or its length is wrong) is built
// again at Open by reading the whole blob and checking it against the ID; a
// chunk that fails its sum is checked the same way before the blob is called
// damaged, so that damage to the small sidecar never condemns a good blob (a
// good blob gets a new sidecar and the read goes on). A blob that fails the
// whole check is damaged. When the new sidecar cannot be written (a full
// disk), the Object keeps the sums in memory and the next Open tries again.
// Sidecars change nothing for older Pullmail versions, which ignore them: the
// format file stays "pullmail-fsstore 2 plain".
//
// # Encrypted files
//
// With Options.Key (32 bytes, kept apart from the directory: see
// LoadOrCreateKey) the store is resource/sealed over the directory
// (Store.Bucket): every blob file is encrypted with AES-256-GCM in chunks of
// 64 KiB of plain bytes, each authenticated before it is read, under a
// header that binds the file to its ID and size; the format is described
// there. It is the format this package wrote before encryption moved to
// resource/sealed (the package tests read a directory written then), so
// sealed over S3 or memory and this store keep the same files. The ID stays
// the SHA-256 of the plain bytes, and an encrypted store needs no sidecar.
package fsstore
