// Command kstatus prints how sigs.k8s.io/cli-utils' kstatus library computes the status of
// each object it reads: a JSON object, or a Kubernetes List, on standard input. One line
// per object: `<status> <message>`. Tests use it to check fleetgate's status against the
// library Flux, Argo CD's kstatus users and `kpt`/`kapply` rely on.
package main

import (
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

func main() {
	data, err := io.ReadAll(os.Stdin)
	if err != nil {
		fail(err)
	}
	var obj map[string]interface{}
	if err := utiljson.Unmarshal(data, &obj); err != nil {
		fail(err)
	}
	objs := []map[string]interface{}{obj}
	if items, ok := obj["items"].([]interface{}); ok {
		objs = objs[:0]
		for _, it := range items {
			if m, ok := it.(map[string]interface{}); ok {
				objs = append(objs, m)
			}
		}
	}
	for _, o := range objs {
		res, err := status.Compute(&unstructured.Unstructured{Object: o})
		if err != nil {
			fail(err)
		}
		fmt.Printf("%s %s\n", res.Status, res.Message)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "kstatus:", err)
	os.Exit(2)
}
