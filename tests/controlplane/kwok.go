package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/pflag"
	"sigs.k8s.io/yaml"

	nodefast "sigs.k8s.io/kwok/kustomize/stage/node/fast"
	nodeheartbeat "sigs.k8s.io/kwok/kustomize/stage/node/heartbeat-with-lease"
	podfast "sigs.k8s.io/kwok/kustomize/stage/pod/fast"
	kwokconfig "sigs.k8s.io/kwok/pkg/config"
	kwokcmd "sigs.k8s.io/kwok/pkg/kwok/cmd"
	kwoklog "sigs.k8s.io/kwok/pkg/log"
	"sigs.k8s.io/kwok/pkg/utils/signals"
)

// Test hooks, honoured by the kwok Stages below (documented in README.md).
const (
	kwokNodeAnnotation = "kwok.x-k8s.io/node"
	// A Pod with this annotation "true" goes from Pending to Failed (containers exit 1).
	hookPodFail = "appimage.test/pod-fail"
	// A Pod with this annotation "true" runs, has an IP, and never becomes Ready.
	hookPodNeverReady = "appimage.test/pod-never-ready"
	// A Pod whose container has this env var "never-ready" is as one with hookPodNeverReady:
	// an AppImage revision can carry it (its deploy template's env), so a test can make one
	// revision's Pods never become Ready.
	hookEnv = "APPIMAGE_TEST_HOOK"
	// A Node with this label "true" turns NotReady; removing the label makes it Ready again.
	hookNodeNotReady = "appimage.test/node-not-ready"
	// A batch image pull Pod (this label "true") whose node's name contains hookPullFailNode
	// cannot pull its image: it stays Pending, its containers waiting with ErrImagePull.
	prePullLabel     = "appimage.kuscia.secretflow/batch-prepull"
	hookPullFailNode = "pull-fail"
)

// pullFailExpr is "true" for a pull Pod on a node whose name holds hookPullFailNode.
const pullFailExpr = `(.metadata.labels["` + prePullLabel + `"] == "true") and ((.spec.nodeName // "") | test("` + hookPullFailNode + `"))`

// the selector expression of a Pod that the pull-fail hook does (In) or does not (NotIn) take.
func pullFailHook(operator string) map[string]any {
	return map[string]any{
		"key":      pullFailExpr,
		"operator": operator,
		"values":   []any{"true"},
	}
}

// runKwok is the kwok controller, as kwok's own main runs it.
func runKwok(args []string) int {
	// Kubernetes' verflag puts a non-bool --version on the global pflag set, which cobra
	// merges into kwok's command, clashing with cobra's own --version.
	pflag.CommandLine = pflag.NewFlagSet(os.Args[0], pflag.ContinueOnError)
	flags := pflag.NewFlagSet("global", pflag.ContinueOnError)
	flags.ParseErrorsWhitelist.UnknownFlags = true
	flags.Usage = func() {}
	ctx := signals.SetupSignalContext()
	ctx, logger := kwoklog.InitFlags(ctx, flags)
	ctx, err := kwokconfig.InitFlags(ctx, flags)
	if err != nil {
		logger.Error("kwok config", err)
		return 1
	}
	cmd := kwokcmd.NewCommand(ctx)
	cmd.PersistentFlags().AddFlagSet(flags)
	cmd.SetArgs(args)
	if err := cmd.ExecuteContext(ctx); err != nil {
		logger.Error("kwok", err)
		return 1
	}
	return 0
}

// selector expressions added to kwok's default Stages so that the hooks win.
func notHook(path, key string) map[string]any {
	return map[string]any{
		"key":      fmt.Sprintf(`.metadata.%s["%s"]`, path, key),
		"operator": "NotIn",
		"values":   []any{"true"},
	}
}

// the value of hookEnv on a Pod's containers, as a Stage selector key.
const envExpr = `.spec.containers.[].env.[] | select( .name == "` + hookEnv + `" ) | .value`

// the selector expression of a Pod whose containers carry hookEnv with this value.
func envHook(operator, value string) map[string]any {
	return map[string]any{
		"key":      envExpr,
		"operator": operator,
		"values":   []any{value},
	}
}

// kwokConfig is DIR/kwok.yaml: kwok's default node and pod Stages (node-initialize,
// node-heartbeat-with-lease, pod-ready, pod-complete, pod-delete) made to step
// aside for the test hooks, plus the hook Stages. The hook Stages also carry a
// weight: when several Stages match, kwok picks only among those with one.
func kwokConfig() ([]byte, error) {
	type patch struct {
		yaml    string
		exclude []map[string]any
	}
	defaults := []patch{
		{nodefast.DefaultNodeInit, []map[string]any{notHook("labels", hookNodeNotReady)}},
		{nodeheartbeat.DefaultNodeHeartbeatWithLease, []map[string]any{notHook("labels", hookNodeNotReady)}},
		{podfast.DefaultPodReady, []map[string]any{
			notHook("annotations", hookPodFail), notHook("annotations", hookPodNeverReady),
			envHook("NotIn", "never-ready"), pullFailHook("NotIn")}},
		{podfast.DefaultPodComplete, []map[string]any{
			notHook("annotations", hookPodNeverReady), envHook("NotIn", "never-ready"),
			pullFailHook("NotIn")}},
		{podfast.DefaultPodDelete, nil},
	}
	docs := []string{}
	for _, d := range defaults {
		var stage map[string]any
		if err := yaml.Unmarshal([]byte(d.yaml), &stage); err != nil {
			return nil, fmt.Errorf("kwok default stage: %w", err)
		}
		spec, _ := stage["spec"].(map[string]any)
		sel, _ := spec["selector"].(map[string]any)
		if spec == nil || sel == nil {
			return nil, fmt.Errorf("kwok default stage %v has no selector", stage["metadata"])
		}
		exprs, _ := sel["matchExpressions"].([]any)
		for _, e := range d.exclude {
			exprs = append(exprs, e)
		}
		sel["matchExpressions"] = exprs
		out, err := yaml.Marshal(stage)
		if err != nil {
			return nil, err
		}
		docs = append(docs, string(out))
	}
	docs = append(docs, hookStages...)
	docs = append(docs, neverReadyByEnv(), pullFailStage)
	return []byte(strings.Join(docs, "---\n")), nil
}

// neverReadyByEnv is the never-ready hook Stage keyed on hookEnv instead of the annotation.
func neverReadyByEnv() string {
	for _, stage := range hookStages {
		if strings.Contains(stage, "name: appimage-pod-never-ready\n") {
			stage = strings.Replace(stage, "name: appimage-pod-never-ready\n", "name: appimage-pod-never-ready-env\n", 1)
			return strings.Replace(stage,
				"- key: '.metadata.annotations[\""+hookPodNeverReady+"\"]'\n      operator: In\n      values: [\"true\"]",
				"- key: '"+envExpr+"'\n      operator: In\n      values: [\"never-ready\"]", 1)
		}
	}
	panic("no never-ready hook stage")
}

func writeKwokConfig(path string) error {
	b, err := kwokConfig()
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

var hookStages = []string{`apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: appimage-pod-fail
spec:
  resourceRef:
    apiGroup: v1
    kind: Pod
  weight: 1
  selector:
    matchExpressions:
    - key: '.metadata.annotations["` + hookPodFail + `"]'
      operator: In
      values: ["true"]
    - key: '.metadata.deletionTimestamp'
      operator: DoesNotExist
    - key: '.status.phase'
      operator: In
      values: ["Pending"]
  next:
    statusTemplate: |
      {{ $now := Now }}
      conditions:
      - lastTransitionTime: {{ $now | Quote }}
        status: "True"
        type: Initialized
      - lastTransitionTime: {{ $now | Quote }}
        status: "False"
        reason: PodFailed
        type: Ready
      - lastTransitionTime: {{ $now | Quote }}
        status: "False"
        reason: PodFailed
        type: ContainersReady
      containerStatuses:
      {{ range .spec.containers }}
      - image: {{ .image | Quote }}
        name: {{ .name | Quote }}
        ready: false
        restartCount: 0
        started: false
        state:
          terminated:
            exitCode: 1
            reason: Error
            message: "failed by the ` + hookPodFail + ` annotation"
            startedAt: {{ $now | Quote }}
            finishedAt: {{ $now | Quote }}
      {{ end }}
      hostIP: {{ NodeIPWith .spec.nodeName | Quote }}
      phase: Failed
      startTime: {{ $now | Quote }}
`, `apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: appimage-pod-never-ready
spec:
  resourceRef:
    apiGroup: v1
    kind: Pod
  weight: 1
  selector:
    matchExpressions:
    - key: '.metadata.annotations["` + hookPodNeverReady + `"]'
      operator: In
      values: ["true"]
    - key: '.metadata.deletionTimestamp'
      operator: DoesNotExist
    - key: '.status.podIP'
      operator: DoesNotExist
  next:
    statusTemplate: |
      {{ $now := Now }}
      conditions:
      - lastTransitionTime: {{ $now | Quote }}
        status: "True"
        type: Initialized
      - lastTransitionTime: {{ $now | Quote }}
        status: "False"
        reason: ContainersNotReady
        type: Ready
      - lastTransitionTime: {{ $now | Quote }}
        status: "False"
        reason: ContainersNotReady
        type: ContainersReady
      containerStatuses:
      {{ range .spec.containers }}
      - image: {{ .image | Quote }}
        name: {{ .name | Quote }}
        ready: false
        restartCount: 0
        started: true
        state:
          running:
            startedAt: {{ $now | Quote }}
      {{ end }}
      initContainerStatuses:
      {{ range .spec.initContainers }}
      - image: {{ .image | Quote }}
        name: {{ .name | Quote }}
        ready: true
        restartCount: 0
        state:
          terminated:
            exitCode: 0
            finishedAt: {{ $now | Quote }}
            reason: Completed
            startedAt: {{ $now | Quote }}
      {{ end }}
      hostIP: {{ NodeIPWith .spec.nodeName | Quote }}
      podIP: {{ PodIPWith .spec.nodeName ( or .spec.hostNetwork false ) ( or .metadata.uid "" ) ( or .metadata.name "" ) ( or .metadata.namespace "" ) | Quote }}
      phase: Running
      startTime: {{ $now | Quote }}
`, `apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: appimage-node-not-ready
spec:
  resourceRef:
    apiGroup: v1
    kind: Node
  weight: 1
  selector:
    matchExpressions:
    - key: '.metadata.labels["` + hookNodeNotReady + `"]'
      operator: In
      values: ["true"]
    - key: '.status.conditions.[] | select( .type == "Ready" ) | .status'
      operator: In
      values: ["True"]
  next:
    statusTemplate: |
      {{ $now := Now }}
      conditions:
      {{ range NodeConditions }}
      - lastHeartbeatTime: {{ $now | Quote }}
        lastTransitionTime: {{ $now | Quote }}
        type: {{ .type | Quote }}
      {{ if eq .type "Ready" }}
        status: "False"
        reason: AppImageTestNotReady
        message: "NotReady by the ` + hookNodeNotReady + ` label"
      {{ else }}
        status: {{ .status | Quote }}
        reason: {{ .reason | Quote }}
        message: {{ .message | Quote }}
      {{ end }}
      {{ end }}
`}

// pullFailStage: a pull Pod (the batch pre-pull phase) on a node whose name holds
// hookPullFailNode stays Pending with its containers waiting in ErrImagePull, as a kubelet
// shows an image it cannot pull; the pull's deadline or its deletion ends it.
var pullFailStage = `apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: appimage-pull-fail
spec:
  resourceRef:
    apiGroup: v1
    kind: Pod
  weight: 1
  selector:
    matchExpressions:
    - key: '` + pullFailExpr + `'
      operator: In
      values: ["true"]
    - key: '.metadata.deletionTimestamp'
      operator: DoesNotExist
    - key: '.status.containerStatuses'
      operator: DoesNotExist
  next:
    statusTemplate: |
      {{ $now := Now }}
      conditions:
      - lastTransitionTime: {{ $now | Quote }}
        status: "True"
        type: Initialized
      - lastTransitionTime: {{ $now | Quote }}
        status: "False"
        reason: ContainersNotReady
        type: Ready
      - lastTransitionTime: {{ $now | Quote }}
        status: "False"
        reason: ContainersNotReady
        type: ContainersReady
      containerStatuses:
      {{ range .spec.containers }}
      - image: {{ .image | Quote }}
        imageID: ""
        name: {{ .name | Quote }}
        ready: false
        restartCount: 0
        started: false
        state:
          waiting:
            reason: ErrImagePull
            message: "failed to pull image {{ .image }}: node name holds ` + hookPullFailNode + ` (the kube-controlplane test hook)"
      {{ end }}
      hostIP: {{ NodeIPWith .spec.nodeName | Quote }}
      phase: Pending
      startTime: {{ $now | Quote }}
`
