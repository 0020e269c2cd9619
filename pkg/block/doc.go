// Package block owns TSDB blocks in the bucket, in the Thanos layout: the
// meta.json with its thanos section, the deletion and no-compact marks, and
// uploading (meta.json last), downloading, deleting (meta.json first) and
// listing blocks, telling complete, partial and marked blocks apart.
package block
