package component

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
)

// cgroupLimitFiles hold the container's memory limit: cgroup v2, then v1.
var cgroupLimitFiles = []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"}

// cgroupMemoryLimit returns the memory limit of the container the process
// runs in, and false when there is none (or no cgroup to read).
func cgroupMemoryLimit(files []string) (int64, bool, error) {
	for _, f := range files {
		b, err := os.ReadFile(f)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return 0, false, fmt.Errorf("read %s: %w", f, err)
		}
		s := strings.TrimSpace(string(b))
		if s == "max" {
			return 0, false, nil
		}
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, false, fmt.Errorf("parse %s: %w", f, err)
		}
		// cgroup v1 writes a huge page-aligned number for "no limit".
		if n <= 0 || n >= math.MaxInt64/2 {
			return 0, false, nil
		}
		return n, true, nil
	}
	return 0, false, nil
}

// setMemoryLimit sets the Go runtime's soft memory limit to ratio of the
// container's memory limit, as Prometheus' --auto-gomemlimit does: the
// garbage collector then works harder near the limit instead of letting
// the heap grow into an OOM kill. A GOMEMLIMIT in the environment wins.
func setMemoryLimit(logger *slog.Logger, ratio float64, files []string) {
	if os.Getenv("GOMEMLIMIT") != "" {
		logger.Info("GOMEMLIMIT set in the environment; --auto-gomemlimit leaves it", "GOMEMLIMIT", os.Getenv("GOMEMLIMIT"))
		return
	}
	limit, ok, err := cgroupMemoryLimit(files)
	if err != nil {
		logger.Warn("cannot read the container's memory limit; the Go memory limit stays unset", "err", err)
		return
	}
	if !ok {
		logger.Debug("no container memory limit; the Go memory limit stays unset")
		return
	}
	goLimit := int64(float64(limit) * ratio)
	debug.SetMemoryLimit(goLimit)
	logger.Info("Go memory limit set from the container's", "container_limit_bytes", limit, "ratio", ratio, "gomemlimit_bytes", goLimit)
}
