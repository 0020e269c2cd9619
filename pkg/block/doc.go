// Package block owns TSDB blocks in the bucket, in Thanos' layout and
// formats: meta.json with its thanos section (meta.go), the deletion,
// no-compact and no-downsample marks (markers.go), uploading with meta.json
// last (upload.go), downloading (download.go), deleting with meta.json first
// (delete.go), and listing a bucket's blocks as complete, partial, corrupt or
// unreadable, with their marks (lister.go).
package block
