// Package bucketstore is the store gateway: it serves the blocks in the
// bucket over the StoreAPI without downloading them. Index and chunk files
// are read through page-sized ranged reads kept in size-bounded LRU caches,
// so Prometheus' own index reader resolves matchers on postings and decodes
// series straight from the bucket, and memory grows with the working set,
// not with the bucket.
package bucketstore
