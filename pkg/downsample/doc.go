// Package downsample owns Thanos' downsampled chunk format (AggrChunk, chunk
// encoding 0xff) and the computation of 5m and 1h blocks from raw or
// already downsampled blocks. It also holds the iterators readers need to
// turn aggregates back into PromQL input: counter values with resets applied
// across chunk boundaries, and averages from sum and count.
package downsample
