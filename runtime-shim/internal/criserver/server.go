package criserver

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"

	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/nodesuite/nodesuite/runtime-shim/internal/validate"
)

var (
	_ runtime.RuntimeServiceServer = (*Service)(nil)
	_ runtime.ImageServiceServer   = (*Service)(nil)
)

// maxMsgSize matches the kubelet's CRI client limit.
const maxMsgSize = 16 * 1024 * 1024

// NewGRPCServer registers s for both CRI services with request validation
// and panic recovery in front of every call.
func NewGRPCServer(s *Service, log *zap.Logger) *grpc.Server {
	g := grpc.NewServer(
		grpc.MaxRecvMsgSize(maxMsgSize), grpc.MaxSendMsgSize(maxMsgSize),
		grpc.ChainUnaryInterceptor(recoverUnary(log), validateUnary),
		grpc.ChainStreamInterceptor(recoverStream(log)),
	)
	runtime.RegisterRuntimeServiceServer(g, s)
	runtime.RegisterImageServiceServer(g, s)
	return g
}

// ValidationError converts a validation failure into InvalidArgument naming the field.
func ValidationError(err error) error {
	var fe *validate.FieldError
	if errors.As(err, &fe) {
		return status.Errorf(codes.InvalidArgument, "invalid %s: %s", fe.Field, fe.Reason)
	}
	return status.Error(codes.InvalidArgument, err.Error())
}

func validateUnary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if err := validate.Request(req); err != nil {
		return nil, ValidationError(err)
	}
	return h(ctx, req)
}

func recoverUnary(log *zap.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (resp any, err error) {
		defer func() {
			if p := recover(); p != nil {
				log.Error("panic in CRI call", zap.String("method", info.FullMethod), zap.Any("panic", p), zap.ByteString("stack", debug.Stack()))
				err = status.Error(codes.Internal, fmt.Sprintf("internal error in %s", info.FullMethod))
			}
		}()
		return h(ctx, req)
	}
}

func recoverStream(log *zap.Logger) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) (err error) {
		defer func() {
			if p := recover(); p != nil {
				log.Error("panic in CRI stream", zap.String("method", info.FullMethod), zap.Any("panic", p))
				err = status.Error(codes.Internal, fmt.Sprintf("internal error in %s", info.FullMethod))
			}
		}()
		return h(srv, ss)
	}
}
