package main

// Regression tests for bugs found in review.

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
)

// An interrupted restore leaves a partly filled target (with its marker):
// the message may not claim that nothing partial was written, and must say
// how to finish.
func TestReviewInterruptedRestoreMessage(t *testing.T) {
	var buf bytes.Buffer
	a := &app{stdout: &buf, stderr: &buf}
	code := a.exitCode(cmdRestore, fmt.Errorf("restore snap-1: %w", context.Canceled))
	if code != exitError {
		t.Errorf("exit code %d, want %d", code, exitError)
	}
	msg := buf.String()
	if strings.Contains(msg, "nothing partial") || !strings.Contains(msg, "again") {
		t.Errorf("interrupted restore message: %q", msg)
	}
	buf.Reset()
	a.exitCode(cmdBackup, fmt.Errorf("backup failed: %w", context.Canceled))
	if !strings.Contains(buf.String(), "nothing partial was committed") {
		t.Errorf("interrupted backup message: %q", buf.String())
	}
}
