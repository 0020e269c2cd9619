// Package bucket builds the object storage bucket every component uses from
// the thanos-io/objstore YAML configuration (--objstore.config-file or
// --objstore.config): S3, GCS, Azure, filesystem and the rest, instrumented
// with objstore's request metrics.
package bucket
